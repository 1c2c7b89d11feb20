# Runs under the agent's own Python interpreter (shell: python), so it works on
# every OS the agent runs on.
import json
import shutil
from pathlib import Path

root = Path(Path.cwd().anchor or "/")
usage = shutil.disk_usage(root)
print(json.dumps({
    "mount": str(root),
    "used_percent": round(100 * usage.used / usage.total, 1),
    "free_gb": round(usage.free / 1e9, 2),
}))
