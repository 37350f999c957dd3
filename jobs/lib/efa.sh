# shellcheck shell=bash
# AWS ParallelCluster GPU nodes (p4d/p5, EFA): the network environment for NCCL over EFA and Open MPI,
# sourced by the GPU job scripts. Only what is installed is used, so the same scripts also run on
# clusters without EFA (the settings are then skipped and NCCL uses sockets).
#   /opt/amazon/efa        libfabric with the EFA provider
#   /opt/amazon/ofi-nccl   aws-ofi-nccl, the NCCL network plugin for libfabric
#   /opt/amazon/openmpi    Open MPI built with Slurm and PMIx support

if [[ -d /opt/amazon/efa ]]; then
  export FI_PROVIDER=efa
  # GPUDirect RDMA over EFA; needed by libfabric < 1.18 (newer stacks turn it on by themselves).
  export FI_EFA_USE_DEVICE_RDMA=${FI_EFA_USE_DEVICE_RDMA:-1}
  export PATH=/opt/amazon/efa/bin:$PATH
  export LD_LIBRARY_PATH=/opt/amazon/efa/lib:/opt/amazon/efa/lib64:${LD_LIBRARY_PATH:-}
fi
if [[ -d /opt/amazon/ofi-nccl ]]; then
  export LD_LIBRARY_PATH=/opt/amazon/ofi-nccl/lib:/opt/amazon/ofi-nccl/lib64:${LD_LIBRARY_PATH:-}
fi
if [[ -d /opt/amazon/openmpi ]]; then
  export PATH=/opt/amazon/openmpi/bin:$PATH
  export LD_LIBRARY_PATH=/opt/amazon/openmpi/lib:/opt/amazon/openmpi/lib64:${LD_LIBRARY_PATH:-}
fi
# NCCL's bootstrap and socket fallback: any interface but docker bridges, loopback and veth pairs.
export NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-^docker,lo,veth}
# Set NCCL_DEBUG=INFO when diagnosing (it prints the chosen network: "NET/OFI Selected Provider is efa").
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
