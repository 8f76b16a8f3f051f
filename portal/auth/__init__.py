from portal.extensions import login_manager


@login_manager.user_loader
def _load_user(session_token: str):
    from portal.auth.services import load_session_user

    return load_session_user(session_token)
