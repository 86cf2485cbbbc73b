from django.contrib import admin

from catalogue.models import Paper


@admin.register(Paper)
class PaperAdmin(admin.ModelAdmin):
    list_display = ["title", "arxiv_id", "published_on", "upvotes", "hidden"]
    list_filter = ["hidden"]
    search_fields = ["=arxiv_id", "title"]
    date_hierarchy = "published_on"
    readonly_fields = ["created_at", "updated_at"]
    list_per_page = 100
    show_full_result_count = False
