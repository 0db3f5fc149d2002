"""Bus adapters: in-process dispatcher and Kafka."""
