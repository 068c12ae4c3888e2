"""The network accelerator: a whole network export in RTL behind stream ports and registers
(docs/accelerator.md). ``program.build(net, lanes)`` then ``top.NetworkAccelerator(prog)``."""
