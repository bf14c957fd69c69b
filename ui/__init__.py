"""The plugin's Qt user interface: icons and dialogs."""
