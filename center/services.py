"""The member center's one state change of its own: the Django user a member signs in as.

Everything else the pages change goes through the services of ``members``, ``loyalty``
and ``rewards``.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from members.models import Member


@transaction.atomic
def member_user_for_sign_in(*, member: Member) -> AbstractBaseUser:
    """The Django user linked to ``member`` (``Member.user``), created on first sign-in.

    A new user gets an unusable password (the member may set one on their profile page)
    and no staff rights. The member row is locked, so two first sign-ins at once create
    one user.
    """
    member = Member.objects.select_for_update().get(pk=member.pk)
    if member.user_id is not None:
        return member.user
    user_model = get_user_model()
    user = user_model(**{user_model.USERNAME_FIELD: f"member-{member.pk}"})
    user.set_unusable_password()
    user.save()
    member.user = user
    member.save(update_fields=["user"])
    return user
