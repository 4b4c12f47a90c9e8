"""kho: the provincial data warehouse."""
