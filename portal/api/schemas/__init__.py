"""Request and response bodies of the JSON API (pydantic), one module per resource of
``portal/api/`` plus ``common`` for what they share; the OpenAPI document uses them."""
