from django.apps import AppConfig
from django.core.signals import request_finished, request_started
from django.db.backends.signals import connection_created


class CatalogueConfig(AppConfig):
    name = "catalogue"
    verbose_name = "Catalogue"

    def ready(self):
        from catalogue import dbsession, summary

        connection_created.connect(dbsession.configure_connection, dispatch_uid="session-settings")
        # The catalogue's version and size are read once per request (summary.catalogue_state).
        request_started.connect(summary.start_request_memo, dispatch_uid="catalogue-state")
        request_finished.connect(summary.end_request_memo, dispatch_uid="catalogue-state")
