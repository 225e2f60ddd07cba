#!/usr/bin/env bash
# The main job: set-up, then the demo (which starts a throwaway cluster
# unless RBD_BACKUP_CONF names one).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec node dist/bin/demo.js
