"""Ansible runs over SSH: the only package that imports ansible_runner."""
