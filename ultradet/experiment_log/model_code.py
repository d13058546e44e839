"""The MLflow "model from code" of a logged detector (``ultradet.experiment_log.model``): MLflow
copies this file into the model folder and runs it to get the Python model object, so nothing
is unpickled at load. Only MLflow imports it."""

from mlflow.models import set_model

from ultradet.experiment_log.model import DetectorModel

set_model(DetectorModel())
