from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy as _
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from api.views.docs import docs_page
from config.health import healthz, readyz
from config.metrics import metrics_view
from console.admin_dashboard import dashboard_segment_view, dashboard_view
from console.admin_fast import fast_members_view, fast_view
from console.admin_till import till_view
from loyalty.admin import programme_settings_view

urlpatterns = [
    # Answered first by config.health.HealthCheckMiddleware; the routes name them for reverse().
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path(
        "admin/loyalty/settings/",
        admin.site.admin_view(programme_settings_view),
        name="loyalty_programme_settings",
    ),
    path("admin/dashboard/", admin.site.admin_view(dashboard_view), name="loyalty_dashboard"),
    path("admin/dashboard/segment/", admin.site.admin_view(dashboard_segment_view), name="loyalty_dashboard_segment"),
    path("admin/fast/", admin.site.admin_view(fast_view), name="loyalty_fast"),
    path("admin/fast/members/", admin.site.admin_view(fast_members_view), name="loyalty_fast_members"),
    path("admin/till/", admin.site.admin_view(till_view), name="loyalty_till"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", docs_page, name="api-docs"),
    path("api/docs/swagger/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-swagger"),
    path("me/", include("center.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
# Reward images in development (DEBUG only; static() adds nothing otherwise); in
# production the web server serves MEDIA_ROOT.
urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)

admin.site.site_header = _("Membership and loyalty")
admin.site.site_title = _("Loyalty admin")
admin.site.index_title = _("Members, points and stores")
# Answered first by config.metrics.MetricsMiddleware (token or internal address); named here.
urlpatterns.insert(2, path("metrics", metrics_view, name="metrics"))
