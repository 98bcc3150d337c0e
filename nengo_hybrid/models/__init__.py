"""Plain tf.keras models (the ANNs) of the experiments."""
