from django.contrib import admin

from ingest.models import IngestRun, RejectedRecord


class RejectedRecordInline(admin.TabularInline):
    model = RejectedRecord
    extra = 0
    can_delete = False
    readonly_fields = ["position", "reason", "raw"]


@admin.register(IngestRun)
class IngestRunAdmin(admin.ModelAdmin):
    list_display = ["id", "source", "format", "status", "seen", "created", "updated", "unchanged"]
    list_display += ["rejected", "queued_at"]
    list_filter = ["status", "format", "source"]
    readonly_fields = [f.name for f in IngestRun._meta.fields]
    inlines = [RejectedRecordInline]

    def has_add_permission(self, request):
        return False
