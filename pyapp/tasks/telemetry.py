"""The built-in demo task: which subsystem a telemetry or field-report line is about."""

from __future__ import annotations

from .classification import ClassificationTask, Label

LABELS = [
    Label(
        "thermal",
        "Temperatures, overheating, cooling and fans running against heat.",
        (
            "CPU temperature 98C exceeds critical threshold on host rack-12",
            "Thermal throttling engaged on GPU 3, core clock reduced",
            "Inlet air temperature high in cold aisle B",
            "Overheat warning: chassis temperature above 70 degrees",
            "Coolant loop temperature rising, chiller not keeping up",
            "Heat sink temperature out of range on board 7",
            "Server shut down to protect itself from overheating",
            "Ambient temperature in the cabinet reached 45C",
        ),
    ),
    Label(
        "power",
        "Supply voltage, batteries, PSUs, UPS and outages.",
        (
            "PSU 2 failed, running on redundant supply",
            "Input voltage dropped below 190V on PDU-A",
            "UPS switched to battery after utility power loss",
            "Battery state of charge at 8 percent, shutdown imminent",
            "Brownout detected on feed B, load transferred",
            "Power supply fan and output voltage fault on node 9",
            "Circuit breaker tripped on rack power strip",
            "Generator failed to start during mains outage",
        ),
    ),
    Label(
        "network",
        "Links, packets, latency, DNS and connectivity.",
        (
            "Link down on eth0, carrier lost",
            "Packet loss of 12% to gateway 10.0.0.1",
            "BGP session to upstream peer flapped three times",
            "DNS resolution failing for api.internal",
            "High latency on WAN uplink, 900 ms round trip",
            "Interface xe-0/0/1 CRC errors increasing",
            "VPN tunnel to site 4 is down",
            "Switch port 24 is flapping between up and down",
        ),
    ),
    Label(
        "storage",
        "Disks, file systems, RAID, capacity and I/O errors.",
        (
            "Disk /dev/sdb reports reallocated sectors, SMART failure predicted",
            "Filesystem /var is 97% full",
            "RAID array degraded, member disk 3 missing",
            "I/O error reading block 88123 on volume data01",
            "NVMe drive wear level at 95 percent",
            "Write latency on the SAN exceeded 200 ms",
            "No space left on device while writing log file",
            "Storage pool quota exceeded for tenant acme",
        ),
    ),
    Label(
        "mechanical",
        "Moving parts: fans, pumps, motors, bearings, vibration, doors.",
        (
            "Error: Fan speed threshold exceeded on Node 4B.",
            "Fan 2 stalled, rotor speed 0 RPM",
            "Excessive vibration detected on pump bearing",
            "Conveyor motor jammed, overcurrent stop",
            "Hard drive spindle noise and head clicking reported",
            "Cabinet door latch broken, door will not close",
            "Compressor belt slipping, abnormal noise from unit",
            "Actuator stuck at 40 percent travel",
        ),
    ),
    Label(
        "sensor",
        "Readings that are missing, implausible, stuck or need calibration.",
        (
            "Humidity sensor returns NaN since 03:00",
            "Pressure transducer reading stuck at 0.00 bar",
            "Temperature probe disconnected on channel 4",
            "Flow meter calibration expired",
            "Accelerometer values out of physical range, likely faulty",
            "GPS module reports no fix, position unavailable",
            "Sensor drift detected: readings off by 15 percent from reference",
            "Level sensor signal noisy and intermittent",
        ),
    ),
    Label(
        "software",
        "Crashes, exceptions, failed deployments, bugs and configuration.",
        (
            "Segmentation fault in process telemetryd, core dumped",
            "Unhandled exception: NullPointerException in OrderService",
            "Service restart loop after failed deployment of v2.3.1",
            "Configuration file parse error at line 42",
            "Memory leak in worker process, RSS grows 50 MB per hour",
            "Firmware update failed with checksum mismatch",
            "Database migration script aborted with syntax error",
            "Certificate expired, TLS handshake rejected by client",
        ),
    ),
]


def telemetry_triage() -> ClassificationTask:
    return ClassificationTask(
        "telemetry-triage",
        LABELS,
        description="Which subsystem a telemetry line or field report is about.",
    )
