"""The blocking half of the `aws` infra: boto3 calls, and what EC2's answers mean.

Every function here blocks on the network, so aws.py runs each of them in a
worker thread (asyncio.to_thread). They take a boto3 EC2 client for one region
and raise CloudError subclasses, never botocore's exceptions, so that the engine
sees "try elsewhere" (CapacityError) or "never works as configured"
(PrecheckError). Messages carry the region, the instance type and AWS's error
code; never a credential.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from skytui.clouds.base import CapacityError, CloudError, PrecheckError

log = logging.getLogger(__name__)

# Canonical's account, and its Ubuntu 22.04 server images for amd64 (gp2 and
# gp3 volume flavours both match the pattern).
CANONICAL_OWNER = "099720109477"
UBUNTU_2204_NAME = "ubuntu/images/hvm-ssd*/ubuntu-jammy-22.04-amd64-server-*"

# "No room for this request here, now": another region, zone or market, or
# the same one later, may work.
CAPACITY_CODES = frozenset({
    "InsufficientInstanceCapacity", "InstanceLimitExceeded", "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded", "Unsupported", "InsufficientFreeAddressesInSubnet",
    "InsufficientHostCapacity", "InsufficientReservedInstanceCapacity", "VcpuLimitExceeded",
    "InsufficientCapacity",
})
# "Never works as configured": credentials, permissions, images, opt-in regions.
PRECHECK_CODES = frozenset({
    "AuthFailure", "UnauthorizedOperation", "OptInRequired", "InvalidClientTokenId",
    "SignatureDoesNotMatch", "IncompleteSignature", "ExpiredToken", "RequestExpired",
    "MissingAuthenticationToken", "Blocked", "PendingVerification", "InvalidKeyPair.Format",
})
PRECHECK_PREFIXES = ("InvalidAMIID.",)
# AWS's own message is shown only for these codes: it names the image or the
# parameter at fault. Others (signature errors echo the canonical request,
# which may hold a session token) are reduced to their code.
SHOWN_MESSAGES = ("InvalidAMIID.", "InvalidParameter", "OptInRequired", "Unsupported", "InvalidKeyPair.")

PRECHECK_HINTS = {
    "AuthFailure": "AWS did not accept the credentials; check them with `aws sts get-caller-identity`",
    "UnauthorizedOperation": "the credentials are not allowed to call {action}; grant it in IAM",
    "OptInRequired": "the account is not opted in to {region} (or to this service); enable it in the AWS console",
}

LIVE_STATES = ("pending", "running", "stopping", "stopped")


def error_code(exc: BaseException) -> str | None:
    """AWS's error code of a botocore ClientError, else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def _aws_message(exc: BaseException, code: str) -> str:
    if not code.startswith(SHOWN_MESSAGES):
        return ""
    response = getattr(exc, "response", None)
    message = str(response.get("Error", {}).get("Message", "")) if isinstance(response, Mapping) else ""
    return message.splitlines()[0][:200] if message else ""


def translate(
    exc: BaseException, *, region: str, action: str, instance_type: str | None = None, market: str | None = None,
) -> CloudError:
    """A botocore failure as the CloudError the engine acts on."""
    from botocore import exceptions as boto_errors

    what = " ".join(part for part in (market, instance_type) if part)
    if isinstance(exc, (boto_errors.NoCredentialsError, boto_errors.PartialCredentialsError,
                        boto_errors.CredentialRetrievalError)):
        return PrecheckError(f"aws/{region}: {action}: no usable AWS credentials ({type(exc).__name__}); "
                             "run `aws configure` or set AWS_PROFILE")
    if isinstance(exc, (boto_errors.EndpointConnectionError, boto_errors.ConnectTimeoutError,
                        boto_errors.ReadTimeoutError, boto_errors.ConnectionClosedError)):
        # EC2 could not be reached: a later try, or another region, may work.
        return CapacityError(f"aws/{region}: {action}: EC2 did not answer ({type(exc).__name__})")
    code = error_code(exc)
    if code is None:
        return CloudError(f"aws/{region}: {action} failed: {type(exc).__name__}")
    detail = _aws_message(exc, code)
    suffix = f": {detail}" if detail else ""
    if code in CAPACITY_CODES:
        return CapacityError(f"aws/{region}: no capacity for {what or action} ({code}){suffix}")
    if code in PRECHECK_CODES or code.startswith(PRECHECK_PREFIXES):
        hint = PRECHECK_HINTS.get(code, "").format(action=action, region=region)
        if code.startswith("InvalidAMIID."):
            hint = f"set infra.aws.images.{region} to an AMI that exists there"
        return PrecheckError(f"aws/{region}: {action} refused ({code}){suffix}" + (f"; {hint}" if hint else ""))
    # Anything else (a limit, an odd parameter in one region): SkyPilot fails
    # over to the next place, and so does skytui.
    return CapacityError(f"aws/{region}: {action} failed for {what or 'the request'} ({code}){suffix}")


def make_client(session: Any, region: str, *, attempts: int, read_timeout_s: float) -> Any:
    """An EC2 client of one region. The endpoint is boto3's own choice, so
    AWS_ENDPOINT_URL (and the config file's endpoint settings) are honoured."""
    from botocore.config import Config as BotoConfig

    config = BotoConfig(
        connect_timeout=10, read_timeout=read_timeout_s,
        retries={"mode": "standard", "total_max_attempts": attempts}, user_agent_extra="skytui",
    )
    return session.client("ec2", region_name=region, config=config)


# ------------------------------------------------------------------- images


def find_image(client: Any, region: str, configured: str | None) -> tuple[str, str]:
    """(AMI id, root device name): the configured image, or the newest
    Canonical Ubuntu 22.04 amd64 image of the region."""
    from botocore.exceptions import ClientError

    if configured:
        try:
            images = client.describe_images(ImageIds=[configured])["Images"]
        except ClientError as exc:
            raise translate(exc, region=region, action=f"describe image {configured}") from None
        if not images:
            raise PrecheckError(f"aws/{region}: image {configured} (infra.aws.images.{region}) does not exist there")
        return configured, images[0].get("RootDeviceName") or "/dev/sda1"
    try:
        images = client.describe_images(
            Owners=[CANONICAL_OWNER],
            Filters=[
                {"Name": "name", "Values": [UBUNTU_2204_NAME]},
                {"Name": "architecture", "Values": ["x86_64"]},
                {"Name": "state", "Values": ["available"]},
            ],
        )["Images"]
    except ClientError as exc:
        raise translate(exc, region=region, action="find the Ubuntu 22.04 image") from None
    if not images:
        raise PrecheckError(
            f"aws/{region}: no Canonical Ubuntu 22.04 amd64 image found; set infra.aws.images.{region} to an AMI id"
        )
    newest = max(images, key=lambda image: str(image.get("CreationDate") or ""))
    return str(newest["ImageId"]), newest.get("RootDeviceName") or "/dev/sda1"


# ---------------------------------------------------------- key and firewall


def owner_tags(install_id: str) -> list[dict[str, Any]]:
    return [{"Key": "skytui-owner", "Value": install_id}]


def ensure_key_pair(client: Any, region: str, name: str, public_key: str, install_id: str) -> None:
    """Import skytui's VM key under `name`; already there is fine."""
    from botocore.exceptions import ClientError

    try:
        client.import_key_pair(
            KeyName=name, PublicKeyMaterial=public_key.encode(),
            TagSpecifications=[{"ResourceType": "key-pair", "Tags": owner_tags(install_id)}],
        )
    except ClientError as exc:
        if error_code(exc) != "InvalidKeyPair.Duplicate":
            raise translate(exc, region=region, action="import the key pair") from None


def ensure_security_group(client: Any, region: str, name: str, install_id: str) -> str:
    """The id of the group `name` in the default VPC, open to SSH (TCP 22)."""
    from botocore.exceptions import ClientError

    try:
        vpcs = client.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise PrecheckError(
                f"aws/{region} has no default VPC, which skytui launches into; "
                f"create one with `aws ec2 create-default-vpc --region {region}`"
            )
        vpc_id = vpcs[0]["VpcId"]
        group = _find_group(client, name, vpc_id)
        if group is None:
            try:
                created = client.create_security_group(
                    GroupName=name, VpcId=vpc_id, Description="skytui: SSH to managed job nodes",
                    TagSpecifications=[{"ResourceType": "security-group", "Tags": owner_tags(install_id)}],
                )
                group = {"GroupId": created["GroupId"], "IpPermissions": []}
            except ClientError as exc:
                if error_code(exc) != "InvalidGroup.Duplicate":
                    raise
                group = _find_group(client, name, vpc_id)  # created meanwhile by another launch
                if group is None:
                    raise
        if not _opens_ssh(group.get("IpPermissions", [])):
            try:
                client.authorize_security_group_ingress(
                    GroupId=group["GroupId"],
                    IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                                    "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "skytui SSH"}]}],
                )
            except ClientError as exc:
                if error_code(exc) != "InvalidPermission.Duplicate":
                    raise
        return str(group["GroupId"])
    except ClientError as exc:
        raise translate(exc, region=region, action="set up the security group") from None


def _find_group(client: Any, name: str, vpc_id: str) -> dict[str, Any] | None:
    groups = client.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc_id]}]
    )["SecurityGroups"]
    return dict(groups[0]) if groups else None


def _opens_ssh(permissions: Iterable[Mapping[str, Any]]) -> bool:
    return any(
        p.get("IpProtocol") in ("tcp", "-1") and (p.get("IpProtocol") == "-1" or p.get("FromPort", 0) <= 22 <= p.get("ToPort", 0))
        and any(r.get("CidrIp") == "0.0.0.0/0" for r in p.get("IpRanges", []))
        for p in permissions
    )


# ---------------------------------------------------------------- instances


def run_instances(client: Any, region: str, instance_type: str, market: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        instances: list[dict[str, Any]] = client.run_instances(**params)["Instances"]
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, region=region, action="RunInstances", instance_type=instance_type, market=market) from None
    return instances


def describe_instances(client: Any, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every instance matching `filters` (filters never fail on a missing id,
    unlike InstanceIds=)."""
    found: list[dict[str, Any]] = []
    for page in client.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page.get("Reservations", []):
            found.extend(reservation.get("Instances", []))
    return found


def terminate_instances(client: Any, ids: list[str]) -> None:
    from botocore.exceptions import ClientError

    if not ids:
        return
    try:
        client.terminate_instances(InstanceIds=ids)
    except ClientError as exc:
        if error_code(exc) != "InvalidInstanceID.NotFound":
            raise
        # Some are long gone: terminate the others one by one.
        for instance_id in ids:
            try:
                client.terminate_instances(InstanceIds=[instance_id])
            except ClientError as inner:
                if error_code(inner) != "InvalidInstanceID.NotFound":
                    raise


def tag(instance: Mapping[str, Any], key: str) -> str | None:
    for item in instance.get("Tags", []) or []:
        if item.get("Key") == key:
            return str(item.get("Value"))
    return None
