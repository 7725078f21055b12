"""Read-only API lists narrowed by query parameters: validated by a serializer (bad values answer 400 with a message
per field), applied by a selector."""


class FilteredListMixin:
    """For viewsets: `filter_serializer_class` validates the list's query parameters and `filter_list(queryset,
    filters)` (a selector) applies them; other actions see the whole queryset."""

    filter_serializer_class = None

    def filter_list(self, queryset, filters: dict):  # pragma: no cover - interface
        raise NotImplementedError

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action != "list":
            return queryset
        filters = self.filter_serializer_class(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return self.filter_list(queryset, filters.validated_data)
