from django.contrib import admin
from django.urls import path
from django.utils.translation import gettext_lazy as _
from django.views.generic import RedirectView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]

admin.site.site_header = _("Membership and loyalty")
admin.site.site_title = _("Loyalty admin")
admin.site.index_title = _("Members, points and stores")
