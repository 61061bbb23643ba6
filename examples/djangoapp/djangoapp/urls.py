from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import path
from notes import views

urlpatterns = [
    path("", views.index, name="index"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]

# Only active with DEBUG on; in production nginx serves STATIC_ROOT/MEDIA_ROOT.
urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
