from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MembersConfig(AppConfig):
    name = "members"
    verbose_name = _("Members")

    def ready(self) -> None:
        # The sign-in receiver that records the member's language (members.language).
        from django.db.models.signals import post_migrate

        from . import language  # noqa: F401
        from .profile_trigger import sqlite_trigger_restore

        # SQLite loses the updated_at trigger when a migration rebuilds members_member.
        post_migrate.connect(sqlite_trigger_restore, sender=self, dispatch_uid="members_sqlite_profile_trigger")
