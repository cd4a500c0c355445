"""A Kubernetes API server emulator on loopback, for tests, benchmarks and demos.

The official `kubernetes` client talks to it unchanged over HTTP: discovery, paginated LIST with
expiring continue tokens, WATCH with bookmarks, and scripted faults (403/404/429/500, slow and
dropped responses, a server that dies), and the writes an agent's commands make (merge PATCH of
objects and of workloads' `scale`, DELETE), refusable per verb. See `__main__` for running it by
hand.

    state = ClusterState(objects)
    with KubeEmulator(state) as emu:
        emu.write_kubeconfig(tmp / "kubeconfig")
        state.add_fault(kind="Secret", status=403)
        state.forbid("Deployment.apps", "patch", subresource="scale")
"""

from tools.kube_emulator.resources import BUILTIN, METRICS, Resource
from tools.kube_emulator.server import KubeEmulator, status_body
from tools.kube_emulator.sources import load_fixture, sample_objects
from tools.kube_emulator.state import ClusterState, Fault, Rejected, RequestInfo, merge_patch

__all__ = [
    "BUILTIN",
    "METRICS",
    "ClusterState",
    "Fault",
    "KubeEmulator",
    "Rejected",
    "RequestInfo",
    "Resource",
    "load_fixture",
    "merge_patch",
    "sample_objects",
    "status_body",
]
