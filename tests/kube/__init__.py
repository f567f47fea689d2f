"""A real Kubernetes control plane (kube-apiserver + etcd) for the test suite."""
