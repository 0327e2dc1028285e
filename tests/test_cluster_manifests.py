"""cluster/: the Ray cluster-launcher YAML passes Ray's own validator (and fails it when broken), the
KubeRay manifests carry what a GPU sweep with token authentication needs, the image and the sweep
config agree with them, and the loopback script is sound.

The launcher config is checked the way `ray up` checks it: ``prepare_config`` (defaults merged) then
``validate_config`` (Ray's JSON schema, ``ray/autoscaler/ray-schema.json``, plus its cross-field checks).
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from _procs import pids_mentioning
from packaging.requirements import Requirement
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
LAUNCHER = CLUSTER / "gpu-cluster.yaml"
KUBERAY = CLUSTER / "kuberay"
RAY_VERSION = ray.__version__


def readme_torch_pin() -> str:
    match = re.search(r"torch==([0-9][0-9.]*)", (ROOT / "README.md").read_text())
    assert match, "the README's install command pins torch"
    return match.group(1)


def load_launcher() -> dict:
    return yaml.safe_load(LAUNCHER.read_text())


def test_the_ray_version_is_the_one_the_package_supports():
    try:
        import tomllib  # Python >= 3.11
    except ImportError:  # pragma: no cover
        tomllib = pytest.importorskip("tomli")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ray_req = next(Requirement(d) for d in deps if Requirement(d).name == "ray")
    assert ray_req.specifier.contains(RAY_VERSION), (ray_req, RAY_VERSION)
    assert {"default", "tune", "rllib"} <= ray_req.extras


# --------------------------------------------------------------------------- cluster launcher


def check_launcher(config: dict) -> None:
    """Ray's own checks (as `ray up`), then what this project needs from the config. Raises if wrong."""
    validate_config(copy.deepcopy(config))  # the file as written: schema (no unknown keys) + cross-field checks
    prepared = prepare_config(copy.deepcopy(config))  # merged with Ray's AWS defaults, as `ray up` does
    validate_config(prepared)

    # every node type: node_config and resources (schema); here: a CPU head and autoscaling GPU workers
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert not head["resources"].get("GPU"), "the head is a CPU node"
    gpu = {n: t for n, t in types.items() if n != config["head_node_type"] and t["resources"].get("GPU", 0) >= 1}
    assert gpu, "a GPU worker node type"
    for name, t in gpu.items():
        assert 0 <= t.get("min_workers", 0) < t["max_workers"] <= config["max_workers"], f"{name} autoscales"
        assert t["node_config"]["InstanceType"], name
    assert config["provider"]["type"] == "aws"

    # the same Ray on every node, with the extras rayprune uses; the project installed on every node
    setup = " && ".join(config["setup_commands"])
    pins = re.findall(r"ray\[([a-z,]+)\]==([0-9.]+)", setup)
    assert pins, "setup_commands pin ray[...]==VERSION"
    for extras, version in pins:
        assert version == RAY_VERSION and {"default", "tune", "rllib"} <= set(extras.split(","))
    docker = config["docker"]
    for key in ("head_image", "worker_image"):
        assert docker[key].startswith(f"rayproject/ray:{RAY_VERSION}-py3"), docker[key]
    assert docker["worker_image"].endswith("-gpu")
    for key in ("head_setup_commands", "worker_setup_commands"):
        commands = " && ".join(prepared[key])  # setup_commands + the node type's own, as Ray merges them
        assert f"torch=={readme_torch_pin()}" in commands, key
        assert re.search(r"pip install (-q )?-e ~/rayprune\b", commands), key
    assert config["file_mounts"]["~/rayprune"] == ".", "the repository is shipped to every node"

    # token authentication on every node, the token shipped by file_mounts; dashboard on loopback only
    run_options = " ".join(docker["run_options"])
    assert "-e RAY_AUTH_MODE=token" in run_options
    token_path = re.search(r"-e RAY_AUTH_TOKEN_PATH=(\S+)", run_options).group(1)
    mounted = {str(Path(remote.replace("~", "/home/ray"))) for remote in config["file_mounts"]}
    assert str(Path(token_path).parent) in mounted, "the token file comes from a file mount"
    head_start = " ".join(config["head_start_ray_commands"])
    worker_start = " ".join(config["worker_start_ray_commands"])
    for start in (head_start, worker_start):
        assert "RAY_AUTH_MODE=token" in start and "ray start" in start
        assert "RAY_AUTH_MODE=disabled" not in start
    assert "--head" in head_start and "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in head_start
    assert "--address=$RAY_HEAD_IP:6379" in worker_start


def test_launcher_config_passes_rays_validator_and_project_checks():
    check_launcher(load_launcher())


def _drop(path):
    def mutate(c):
        *parents, last = path
        node = c
        for p in parents:
            node = node[p]
        del node[last]
    return mutate


def _set(path, value):
    def mutate(c):
        *parents, last = path
        node = c
        for p in parents:
            node = node[p]
        node[last] = value
    return mutate


BROKEN_LAUNCHER = {
    # fields Ray's schema requires
    "no cluster_name": _drop(["cluster_name"]),
    "no provider": _drop(["provider"]),
    "no provider type": _drop(["provider", "type"]),
    "gpu worker without resources": _drop(["available_node_types", "ray.worker.gpu", "resources"]),
    "head without node_config": _drop(["available_node_types", "ray.head.cpu", "node_config"]),
    # unknown fields (Ray's schema allows no extra keys)
    "unknown top-level key": _set(["setup_command"], ["pip install rayprune"]),
    "unknown node-type key": _set(["available_node_types", "ray.worker.gpu", "min_worker"], 0),
    "unknown docker key": _set(["docker", "imag"], "rayproject/ray"),
    "fractional resource": _set(["available_node_types", "ray.worker.gpu", "resources"], {"GPU": 0.5}),
    # Ray's cross-field checks
    "head type not defined": _set(["head_node_type"], "ray.head.missing"),
    "min_workers over max_workers": _set(["max_workers"], 0),
    # what the project needs
    "no head_node_type": _drop(["head_node_type"]),
    "no GPU worker type": _drop(["available_node_types", "ray.worker.gpu"]),
    "ray not pinned": _set(["setup_commands"], ['pip install -q "ray[default,tune,rllib]"']),
    "other ray version": _set(["setup_commands"], ['pip install -q "ray[default,tune,rllib]==2.9.0"']),
    "project not installed on workers": _set(["worker_setup_commands"], ["pip install -q torch"]),
    "no file mounts": _drop(["file_mounts"]),
    "no docker": _drop(["docker"]),
    "dashboard on all interfaces": _set(["head_start_ray_commands"], [
        "ray stop", "RAY_AUTH_MODE=token ray start --head --port=6379 --dashboard-host=0.0.0.0"]),
    "auth off on workers": _set(["worker_start_ray_commands"], [
        "ray stop", "ray start --address=$RAY_HEAD_IP:6379"]),
    "no head start commands": _drop(["head_start_ray_commands"]),
}


@pytest.mark.parametrize("mutation", list(BROKEN_LAUNCHER))
def test_a_broken_launcher_config_is_rejected(mutation):
    config = load_launcher()
    BROKEN_LAUNCHER[mutation](config)
    with pytest.raises((jsonschema.ValidationError, ValueError, KeyError, AssertionError, AttributeError)):
        check_launcher(config)


# --------------------------------------------------------------------------- KubeRay


def load_docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d is not None]


def shared_claim() -> tuple[str, str]:
    (pvc,) = load_docs("shared-pvc.yaml")
    assert pvc["apiVersion"] == "v1" and pvc["kind"] == "PersistentVolumeClaim"
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    return pvc["metadata"]["name"], "/shared"


def _pod_spec(group: dict) -> dict:
    spec = group["template"]["spec"]
    assert isinstance(spec["containers"], list) and spec["containers"], "a pod template with containers"
    for c in spec["containers"]:
        assert isinstance(c["name"], str) and c["name"]
        assert isinstance(c["image"], str) and c["image"]
    return spec


def _check_shared_volume(spec: dict) -> None:
    claim, mount = shared_claim()
    volumes = {v["name"]: v for v in spec["volumes"]}
    ray_container = spec["containers"][0]
    mounts = {m["mountPath"]: m["name"] for m in ray_container["volumeMounts"]}
    assert mount in mounts, "the shared volume is mounted"
    assert volumes[mounts[mount]]["persistentVolumeClaim"]["claimName"] == claim
    env = {e["name"]: e.get("value") for e in ray_container.get("env", [])}
    assert env["RAYPRUNE_CACHE"].startswith(mount + "/"), "the base-model cache is on shared storage"


def _token_auth_on(spec: dict, groups: list[dict]) -> bool:
    """KubeRay's authOptions (>= 1.5.1), or RAY_AUTH_MODE=token + RAY_AUTH_TOKEN from a Secret on every container."""
    auth = spec.get("authOptions")
    if auth is not None:
        return auth.get("mode", "token") == "token"  # the mode defaults to token when authOptions is set
    for group in groups:
        for c in group["template"]["spec"]["containers"]:
            env = {e["name"]: e for e in c.get("env", [])}
            if env.get("RAY_AUTH_MODE", {}).get("value") != "token":
                return False
            if "secretKeyRef" not in env.get("RAY_AUTH_TOKEN", {}).get("valueFrom", {}):
                return False
    return True


def check_ray_cluster_spec(spec: dict) -> None:
    assert spec["rayVersion"] == RAY_VERSION, (spec["rayVersion"], RAY_VERSION)
    head = spec["headGroupSpec"]
    workers = spec["workerGroupSpecs"]
    assert isinstance(workers, list) and workers
    assert _token_auth_on(spec, [head, *workers]), "token authentication is on"
    assert head.get("serviceType", "ClusterIP") == "ClusterIP", "the head service is not exposed"
    for group in (head, *workers):
        params = group["rayStartParams"]
        assert isinstance(params, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())
        assert params.get("dashboard-host") in (None, "0.0.0.0", "127.0.0.1")
        pod = _pod_spec(group)
        for c in pod["containers"]:
            assert f"ray{RAY_VERSION}" in c["image"].replace("-", "") or c["image"].endswith(f":{RAY_VERSION}"), \
                f"image {c['image']} names Ray {RAY_VERSION}"
        _check_shared_volume(pod)
    assert not _pod_spec(head)["containers"][0]["resources"]["limits"].get("nvidia.com/gpu"), "a CPU head"
    gpu_groups = []
    for group in workers:
        assert isinstance(group["groupName"], str) and group["groupName"]
        assert 0 <= group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]
        pod = _pod_spec(group)
        res = pod["containers"][0]["resources"]
        gpus = res.get("limits", {}).get("nvidia.com/gpu")
        if gpus is None:
            continue
        assert res["requests"]["nvidia.com/gpu"] == gpus and int(gpus) >= 1, "GPU requests = limits, whole GPUs"
        tolerations = pod.get("tolerations", [])
        assert any(t.get("key") == "nvidia.com/gpu" and t.get("operator") in ("Exists", "Equal")
                   for t in tolerations), "a toleration for the GPU nodes' nvidia.com/gpu taint"
        assert group["maxReplicas"] > group["minReplicas"], "the GPU group autoscales"
        gpu_groups.append(group)
    assert gpu_groups, "a GPU worker group"
    assert spec.get("enableInTreeAutoscaling") is True


def check_raycluster(doc: dict) -> None:
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster"
    assert isinstance(doc["metadata"]["name"], str) and doc["metadata"]["name"]
    check_ray_cluster_spec(doc["spec"])


def check_rayjob(doc: dict) -> None:
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    assert isinstance(doc["metadata"]["name"], str) and doc["metadata"]["name"]
    spec = doc["spec"]
    check_ray_cluster_spec(spec["rayClusterSpec"])
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["rayprune", "sweep"], spec["entrypoint"]
    out = argv[argv.index("--out") + 1]
    assert out.startswith(shared_claim()[1] + "/"), "--out is on the shared volume"
    config = argv[2]
    prefix = "/home/ray/rayprune/"  # where cluster/Dockerfile copies the repository
    assert config.startswith(prefix) and (ROOT / config[len(prefix):]).is_file(), config
    assert isinstance(spec.get("shutdownAfterJobFinishes"), bool)
    assert spec.get("submissionMode", "K8sJobMode") in ("K8sJobMode", "HTTPMode", "SidecarMode")
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in spec.get("metadata", {}).items())


def test_kuberay_raycluster():
    (doc,) = load_docs("raycluster.yaml")
    check_raycluster(doc)


def test_kuberay_rayjob():
    (doc,) = load_docs("rayjob.yaml")
    check_rayjob(doc)


def _cluster_spec(doc):
    return doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]


def _gpu_container(doc):
    return _cluster_spec(doc)["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]


BROKEN_KUBERAY = {
    "wrong apiVersion": lambda d: d.update(apiVersion="ray.io/v1alpha1"),
    "no name": lambda d: d["metadata"].pop("name"),
    "other rayVersion": lambda d: _cluster_spec(d).update(rayVersion="2.9.0"),
    "auth disabled": lambda d: _cluster_spec(d).update(authOptions={"mode": "disabled"}),
    "no auth at all": lambda d: _cluster_spec(d).pop("authOptions"),
    "no GPU request": lambda d: _gpu_container(d)["resources"]["requests"].pop("nvidia.com/gpu"),
    "no GPU at all": lambda d: [_gpu_container(d)["resources"][k].pop("nvidia.com/gpu") for k in ("requests", "limits")],
    "no toleration": lambda d: _cluster_spec(d)["workerGroupSpecs"][0]["template"]["spec"].pop("tolerations"),
    "no worker groups": lambda d: _cluster_spec(d).pop("workerGroupSpecs"),
    "no head template": lambda d: _cluster_spec(d)["headGroupSpec"].pop("template"),
    "exposed head": lambda d: _cluster_spec(d)["headGroupSpec"].update(serviceType="LoadBalancer"),
    "numeric rayStartParams": lambda d: _cluster_spec(d)["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}),
    "cache not shared": lambda d: _gpu_container(d).update(env=[{"name": "RAYPRUNE_CACHE", "value": "/tmp/c"}]),
}


@pytest.mark.parametrize("kind", ["raycluster.yaml", "rayjob.yaml"])
@pytest.mark.parametrize("mutation", list(BROKEN_KUBERAY))
def test_a_broken_kuberay_manifest_is_rejected(kind, mutation):
    (doc,) = load_docs(kind)
    BROKEN_KUBERAY[mutation](doc)
    check = check_raycluster if kind == "raycluster.yaml" else check_rayjob
    with pytest.raises((AssertionError, KeyError, TypeError, ValueError)):
        check(doc)


def _manual_auth(doc, groups="all"):
    """The pre-1.5.1 KubeRay way: RAY_AUTH_MODE=token and RAY_AUTH_TOKEN from a Secret on the containers."""
    spec = _cluster_spec(doc)
    spec.pop("authOptions")
    targets = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in targets if groups == "all" else targets[:1]:
        for c in group["template"]["spec"]["containers"]:
            c.setdefault("env", []).extend([
                {"name": "RAY_AUTH_MODE", "value": "token"},
                {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "rayprune-token", "key": "auth_token"}}},
            ])


def test_token_auth_from_a_secret_is_accepted_on_every_container_only():
    (doc,) = load_docs("raycluster.yaml")
    _manual_auth(doc)
    check_raycluster(doc)
    (doc,) = load_docs("raycluster.yaml")
    _manual_auth(doc, groups="head only")
    with pytest.raises(AssertionError, match="token authentication"):
        check_raycluster(doc)


@pytest.mark.parametrize("entrypoint", ["python sweep.py", "rayprune prune cluster/sweep-gpu.yaml --out /shared/x",
                                        "rayprune sweep /home/ray/rayprune/cluster/sweep-gpu.yaml --out /tmp/x",
                                        "rayprune sweep /home/ray/rayprune/missing.yaml --out /shared/x"])
def test_a_rayjob_entrypoint_that_is_no_shared_sweep_is_rejected(entrypoint):
    (doc,) = load_docs("rayjob.yaml")
    doc["spec"]["entrypoint"] = entrypoint
    with pytest.raises(AssertionError):
        check_rayjob(doc)


# --------------------------------------------------------------------------- image and sweep config


def test_dockerfile_pins_the_cluster_versions():
    text = (CLUSTER / "Dockerfile").read_text()
    assert re.search(rf"^FROM rayproject/ray:{re.escape(RAY_VERSION)}-py3\d+-gpu$", text, re.M)
    assert f'"ray[default,tune,rllib]=={RAY_VERSION}"' in text
    assert f"torch=={readme_torch_pin()}" in text
    assert "COPY --chown=ray:users . /home/ray/rayprune" in text and "pip install --no-cache-dir -e /home/ray/rayprune" in text
    (doc,) = load_docs("raycluster.yaml")
    tag = _cluster_spec(doc)["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    assert f"docker build -f cluster/Dockerfile -t {tag} ." in text


def test_sweep_config_is_valid_and_one_trial_fits_on_one_gpu_worker():
    from rayprune.config import load_config
    from rayprune.sweeps.trainable import placement_bundles

    cfg = load_config(CLUSTER / "sweep-gpu.yaml")
    assert cfg.evaluation.gpus > 0
    need: dict[str, float] = {}
    for bundle in placement_bundles(cfg):
        for k, v in bundle.items():
            need[k] = need.get(k, 0.0) + v
    launcher_gpu = load_launcher()["available_node_types"]["ray.worker.gpu"]["resources"]
    assert need["CPU"] <= launcher_gpu["CPU"] and need["GPU"] <= launcher_gpu["GPU"], (need, launcher_gpu)
    for kind in ("raycluster.yaml", "rayjob.yaml"):
        (doc,) = load_docs(kind)
        limits = _gpu_container(doc)["resources"]["limits"]
        assert need["CPU"] <= float(limits["cpu"]) and need["GPU"] <= float(limits["nvidia.com/gpu"]), kind


# --------------------------------------------------------------------------- loopback script


SCRIPT = CLUSTER / "local-cluster.sh"


def test_local_cluster_script_is_sound():
    assert os.access(SCRIPT, os.X_OK)
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    text = SCRIPT.read_text()
    assert not re.search(r"^[^#]*\bray stop\b", text, re.M), "never `ray stop`: it kills every Ray on the machine"
    assert "--dashboard-host=127.0.0.1" in text and "RAY_AUTH_MODE=token" in text
    if shutil.which("shellcheck"):
        res = subprocess.run(["shellcheck", "-S", "warning", str(SCRIPT)], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout
    usage = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert usage.returncode == 2 and "start|stop|status" in usage.stderr


def test_local_cluster_script_without_a_cluster(tmp_path):
    env = {**os.environ, "RAYPRUNE_LOCAL_CLUSTER": str(tmp_path / "none")}
    status = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True, env=env, timeout=60)
    assert status.returncode != 0 and "no local cluster" in status.stdout
    stop = subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True, env=env, timeout=60)
    assert stop.returncode == 0 and "no processes" in stop.stdout


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("RAYPRUNE_TEST_LOCAL_CLUSTER") != "1",
                    reason="starts two Ray nodes (~1 min on 2 cores); set RAYPRUNE_TEST_LOCAL_CLUSTER=1")
def test_local_cluster_start_status_stop(tmp_path):
    state = f"/tmp/rplc-{os.getpid()}"
    env = {**os.environ, "RAYPRUNE_LOCAL_CLUSTER": state, "RAY_ADDRESS": ""}
    gcs = None
    try:
        start = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, env=env, timeout=300)
        assert start.returncode == 0, start.stdout + start.stderr
        for _ in range(10):  # the autoscaler's view of the second node can lag the GCS's on a loaded machine
            status = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True, env=env,
                                    timeout=120)
            if status.returncode == 0 and len(re.findall(r"^ 1 node_", status.stdout, re.M)) == 2:
                break
            time.sleep(3)
        assert status.returncode == 0 and len(re.findall(r"^ 1 node_", status.stdout, re.M)) == 2, status.stdout
        client = subprocess.run(["bash", str(SCRIPT), "env"], capture_output=True, text=True, env=env)
        exports = dict(re.findall(r"^export (\w+)=(.*)$", client.stdout, re.M))
        gcs = exports["RAYPRUNE_ADDRESS"].rsplit(":", 1)[1]
        assert client_servers(gcs), "the head runs a Ray client server (what stop must not leave behind)"
        probe = ("import ray; ray.init(address='%s', log_to_driver=False); "
                 "print(sum(n['Alive'] for n in ray.nodes()))" % exports["RAYPRUNE_ADDRESS"])
        noauth = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
        nodes = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                               env={**noauth, **exports})
        assert nodes.returncode == 0 and nodes.stdout.strip().splitlines()[-1] == "2", nodes.stderr[-2000:]
        refused = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                                 env={**noauth, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "wrong"})
        assert refused.returncode != 0, "a wrong token is refused"
    finally:
        stop = subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True, env=env, timeout=120)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert not pids_mentioning(state) and not Path(state).exists()
    # the head's Ray client server (re-parented when `ray start` exits, no state folder in its command line)
    assert gcs and not client_servers(gcs)


def client_servers(gcs: str) -> list[int]:
    """The Ray client servers of the cluster whose GCS listens on port ``gcs``."""
    found = []
    for pid in pids_mentioning("ray.util.client.server"):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
        except OSError:
            continue
        if re.search(rf"--address=\S*:{gcs}( |$)", cmd):
            found.append(pid)
    return found
