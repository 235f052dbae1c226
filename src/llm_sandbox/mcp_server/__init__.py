"""The MCP server: sandbox tools for agents over the Model Context Protocol.

`llm-sandbox mcp` (also `llm-sandbox-mcp` and `python -m llm_sandbox.mcp_server.server`) serves
them over stdio; `llm-sandbox serve` serves them over streamable HTTP at `/mcp`, behind its API
keys. Needs the `mcp` extra (`pip install 'llm-sandbox[mcp]'`).
"""
