// What bin/builder runs. Node runs a script from its real path (symlinked directories on the way
// resolved), so the bundle's starter is found relative to the package, wherever the command was
// called from.
'use strict';
require('../dist/cli-bundle/start.cjs');
