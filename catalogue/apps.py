from django.apps import AppConfig
from django.db.backends.signals import connection_created


class CatalogueConfig(AppConfig):
    name = "catalogue"
    verbose_name = "Catalogue"

    def ready(self):
        from catalogue import semantic

        connection_created.connect(semantic.configure_connection, dispatch_uid="hnsw-settings")
