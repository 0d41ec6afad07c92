"""Software Heritage concerns: SWHIDs, origins and the sources that pull their files."""
