from django.contrib import admin
from django.urls import path
from django.utils.translation import gettext_lazy as _
from django.views.generic import RedirectView

from loyalty.admin import programme_settings_view
from loyalty.admin_dashboard import dashboard_view

urlpatterns = [
    path(
        "admin/loyalty/settings/",
        admin.site.admin_view(programme_settings_view),
        name="loyalty_programme_settings",
    ),
    path("admin/dashboard/", admin.site.admin_view(dashboard_view), name="loyalty_dashboard"),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]

admin.site.site_header = _("Membership and loyalty")
admin.site.site_title = _("Loyalty admin")
admin.site.index_title = _("Members, points and stores")
