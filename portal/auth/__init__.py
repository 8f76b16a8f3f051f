from portal.auth.services import load_session_user
from portal.extensions import login_manager


@login_manager.user_loader
def _load_user(session_token: str):
    return load_session_user(session_token)
