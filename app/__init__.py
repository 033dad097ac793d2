"""Inference Kitchen's Streamlit app: the entry (main.py) and shared UI pieces; pages live in ../pages."""
