"""A time model of the planned cuda step, without a GPU: device tables as data
(devices.py), what one launch costs (model.py) and where registers and shared
memory come from (resources.py). `netdsl time --predict` prints it."""
