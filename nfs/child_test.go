package nfs

const childEnv = "SLUICE_NFS_TEST_CHILD"

func runChild() {}
