"""The embedded default world: a synthetic task, a char tokenizer, a corpus and tiny Llama models."""
