"""The host driver of the board (docs/board.md): the byte protocol, the links and the driver.

Imports only :mod:`asqhw.core`; it needs neither Amaranth nor the simulators.
"""
