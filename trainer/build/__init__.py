"""Model construction: the sequential and functional builders and the Model they make."""
