"""Pure torch modules (no Lightning, MLflow or Optuna inside): exportable networks and frozen adapters."""
