from h import *
from cache import load
import sys
name = sys.argv[1]
tr = load(name)
sp = None
if name == 'synthetic':
    sp = np.zeros(len(tr.models), bool); sp[-240:] = True
V = {}
for b in (0.9, 1.0, 1.1):
    V[f'budget{b}'] = dict(config=PlannerConfig(prices=PricePolicy(budget=b)))
V['budget1.0-noka'] = dict(config=PlannerConfig(prices=PricePolicy(budget=1.0)), keep_alive=False)
run(tr, name, V, sparse_mask=sp)
