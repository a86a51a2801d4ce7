"""Generation engines (vLLM or transformers) in Ray actors, and an OpenAI-compatible client, behind one API."""
