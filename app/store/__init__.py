"""The SQL store: the source of truth for collections, points, versions, query log and jobs."""
