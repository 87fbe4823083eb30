"""Input readers, the prompt template shared by training and the runtime, and training examples."""
