"""The board side of the accelerator: UART link, host bridge, board tops, bitstreams, the simulated board."""
