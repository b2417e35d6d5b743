"""The course hub: JupyterHub with a JupyterLab per terracube user, samples/ and mystorage/."""
