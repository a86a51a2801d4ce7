"""Everything that touches Ray: the session, generation engines in actors, the OpenAI-compatible client, jobs."""
