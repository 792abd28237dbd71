"""Models: one OpenAI-compatible client class (`chat.ChatModel`); providers differ only in YAML."""
