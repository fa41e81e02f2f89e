"""VFLGAN: vertical federated GAN (arXiv 2404.09722) with a Flower-free core and a thin Flower shell."""
