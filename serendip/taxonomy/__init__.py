from serendip.taxonomy.taxonomy import Cluster, Taxonomy, build_taxonomy

__all__ = ["Cluster", "Taxonomy", "build_taxonomy"]
