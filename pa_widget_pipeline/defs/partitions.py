from dagster import DynamicPartitionsDefinition

STORES_PARTITION_NAME = "stores"

# One partition per store key of the registry; the registry sensor and the CLI add keys.
stores_partitions = DynamicPartitionsDefinition(name=STORES_PARTITION_NAME)
