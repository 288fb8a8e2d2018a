"""LangChain integration (``pip install vecroute-client[langchain]``)."""

from vecroute_client.langchain.store import VecrouteVectorStore

__all__ = ["VecrouteVectorStore"]
