"""Print how to sign in to the member center as a demo member (development only)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q, Sum

from members.models import Member


class Command(BaseCommand):
    help = "Print the phone number of a demo member to sign in to the member center with."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000/me/")

    def handle(self, *args, url, **options):
        if settings.PRODUCTION:
            raise CommandError("demo_member_login is for development only.")
        # The active member with the most points: the richest pages to look at.
        member = (
            Member.objects.filter(status=Member.Status.ACTIVE)
            .annotate(points=Sum("accounts__balance", filter=Q(accounts__currency="points")))
            .order_by("-points", "pk")
            .first()
        )
        if member is None:
            self.stdout.write("No members yet: run `python manage.py seed_demo` first.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Member center: {url}  phone: {member.phone}  "
                "(ask for a code: it appears in this log as the SMS the sender would deliver)"
            )
        )
