"""Quantisation-aware training of whole networks that map onto the integer spec (1.1).

Modules: :mod:`.scheme` (quantisation schemes), :mod:`.adapter` (the ASQ adapter, modelled
on the integer adapter of docs/datapath.md section 13), :mod:`.actquant` (activation
quantisers), :mod:`.layers` (convolution / linear units with BatchNorm folding),
:mod:`.graph` (a network as a node list, the same graph the exporter writes),
:mod:`.digits_cnn` and :mod:`.resnet` (reference networks), :mod:`.data` (data sets),
:mod:`.train` (training loops) and :mod:`.checkpoint` (checkpoint files).
"""
