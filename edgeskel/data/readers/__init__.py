"""One module per dataset format; importing this package registers every reader."""

from edgeskel.data.readers import ctrgcn, folder, kinect_mat, msr_text, ntu, nw_ucla, pyskl, sbu, synthetic  # noqa: F401
