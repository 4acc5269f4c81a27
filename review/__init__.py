"""The editors' web desk: a FastAPI app with server-rendered HTML over the drafts database.

`create_app(database_url)` builds the app (review.app); `serve(database_url)` runs it with
uvicorn (review.server); `python -m review` serves the database of `DRAFTFLOW_HOME`.
"""
