"""Console: a person's two-factor status, and the support reset for a lost device (audited and emailed)."""

from flask import abort

from portal.access import current_actor, operator_required
from portal.admin.blueprint import bp
from portal.auth.two_factor import services as two_factor
from portal.auth.two_factor.forms import OperatorResetForm
from portal.extensions import db
from portal.models import User
from portal.web import form_errors_status, render, submit


def _load_user(user_id: str) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


def _page(person: User, form: OperatorResetForm | None = None, status: int = 200):
    return render(
        "admin/user_two_factor.html",
        status=status,
        person=person,
        state=two_factor.status(person),
        form=form or OperatorResetForm(formdata=None),
    )


@bp.get("/users/<user_id>/two-factor")
@operator_required
def user_two_factor(user_id: str):
    """A person's second factors, as support sees them (never a secret)."""
    return _page(_load_user(user_id))


@bp.post("/users/<user_id>/two-factor/reset")
@operator_required
def reset_user_two_factor(user_id: str):
    """Switch off every second factor of a person who lost them; they are told by email."""
    person = _load_user(user_id)
    form = OperatorResetForm()

    def reset() -> str:
        two_factor.reset_by_operator(current_actor(), person, form.reason.data)
        return (
            f"Two-factor authentication of {person.email} is off. They were emailed, and the reset is in "
            "the activity log of each of their accounts."
        )

    return submit(form, reset, "admin.user_two_factor", user_id=person.id) or _page(
        person, form, status=form_errors_status()
    )
