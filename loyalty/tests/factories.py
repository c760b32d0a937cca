import factory
from django.utils import timezone

from members.models import Member, Store
from members.services import luhn_digit


class StoreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Store
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"store{n:03d}")
    name = factory.Sequence(lambda n: f"Store {n}")
    city = "Shanghai"


def _member_number(n: int) -> str:
    body = f"7{n:08d}"
    return body + luhn_digit(body)


class MemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Member

    phone = factory.Sequence(lambda n: f"+86139{n:08d}")
    member_number = factory.Sequence(_member_number)
    name = factory.Faker("name", locale="zh_CN")
    home_store = factory.SubFactory(StoreFactory)
    joined_at = factory.LazyFunction(timezone.now)
